tsk "prep" {
  run = "true"
}
