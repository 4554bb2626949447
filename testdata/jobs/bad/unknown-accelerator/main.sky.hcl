task "train" {
  resources {
    accelerators = "V1OO:8"
  }
  run = "true"
}
