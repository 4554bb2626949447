variable "dataset_uri" {
  type        = string
  description = "Object-store URI of the raw training data"
}

variable "dataset_gb" {
  type        = number
  default     = 150
  description = "Size of the raw data, GB"
}

variable "dataset_region" {
  type        = string
  default     = null
  description = "Region of the bucket holding the raw data, when known (prices reading it)"
}

variable "epochs" {
  type    = number
  default = 3

  validation {
    condition     = var.epochs >= 1 && var.epochs <= 100
    error_message = "epochs must be between 1 and 100."
  }
}

variable "gpus" {
  type        = list(string)
  default     = ["V100:8", "A100:8"]
  description = "Accelerators the training step may use (any of)"
}

variable "gpu_hours" {
  type        = number
  default     = 80
  description = "Training time on one V100, hours; the estimate divides by the GPU count"
}

variable "spot" {
  type    = bool
  default = true
}
