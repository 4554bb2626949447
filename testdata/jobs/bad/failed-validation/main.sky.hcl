variable "epochs" {
  type    = number
  default = 0

  validation {
    condition     = var.epochs >= 1
    error_message = "epochs must be at least 1."
  }
}

task "t" {
  run = "echo ${var.epochs}"
}
