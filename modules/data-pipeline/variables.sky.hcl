variable "rows" {
  type        = number
  default     = 20000
  description = "How many rows the generate step writes"
}

variable "cpus" {
  type    = string
  default = "2+"
}

variable "result_uri" {
  type        = string
  default     = "./out"
  description = "Where the report must end up (object-store URI or a path in the job directory)"
}
