task "prep" {
  resources {
    cpus = "4+"
  }
}
