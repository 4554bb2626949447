task "prep" {
  run     = "true"
  retries = "three"
}
