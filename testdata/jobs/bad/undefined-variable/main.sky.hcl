variable "epochs" {
  default = 3
}

task "train" {
  run = "python train.py --epochs ${var.epoch}"
}
