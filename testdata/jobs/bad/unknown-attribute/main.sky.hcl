task "prep" {
  run     = "true"
  retires = 3
}
