variable "epochs" {
  type    = number
  default = 3
}

variable "regions" {
  type    = list(string)
  default = ["aws:us-*", "gcp:us-*"]
}

variable "token" {
  type      = string
  default   = "s3cr3t"
  sensitive = true
}
