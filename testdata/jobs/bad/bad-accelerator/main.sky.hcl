task "train" {
  resources {
    accelerators = "V100:eight"
  }
  run = "true"
}
