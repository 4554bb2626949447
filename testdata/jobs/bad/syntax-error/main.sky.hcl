task "prep" {
  run = "true"
  resources {
    cpus = 
  }
}
