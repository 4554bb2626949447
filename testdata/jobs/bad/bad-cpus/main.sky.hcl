task "t" {
  resources {
    cpus   = "lots"
    memory = "5000000"
  }
  run = "true"
}
