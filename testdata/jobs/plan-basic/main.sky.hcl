# A small local job for plan snapshots: fetch → crunch → report.

provider "local" {
  zones = ["zone-a", "zone-b"]
}

variable "api_key" {
  type      = string
  default   = "k-123456"
  sensitive = true
}

task "fetch" {
  resources {
    cpus = "2+"
  }
  outputs = { raw = { size_gb = 5 } }
  run     = "fetch --key ${var.api_key} > $SKYFORM_OUTPUT_RAW/data"

  estimate {
    hours = 0.5
  }
}

task "crunch" {
  resources {
    cpus   = "8+"
    memory = "32+"
  }
  inputs  = { raw = task.fetch.outputs.raw }
  outputs = { result = { size_gb = 1 } }
  run     = <<-EOT
    crunch $SKYFORM_INPUT_RAW/data \
      --out $SKYFORM_OUTPUT_RESULT/result
  EOT

  estimate {
    hours = 2
  }
}

task "report" {
  inputs = { result = task.crunch.outputs.result }
  run    = "cat $SKYFORM_INPUT_RESULT/result"

  estimate {
    hours = 0.1
  }
}

output "result" {
  value = task.crunch.outputs.result
}
