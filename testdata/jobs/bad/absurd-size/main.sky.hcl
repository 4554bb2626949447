task "t" {
  outputs = { out = { size_gb = 50000000 } }
  run     = "true"
}
