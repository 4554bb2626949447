task "prep" {
  run = "true"
}

task "prep" {
  run = "false"
}
