provider "aws" {}
provider "gcp" {}

skyform {
  state_path = ".skyform/state"
}

policy {
  minimize = "cost"
  deadline = "1d12h"
  budget   = 2000
  regions  = var.regions

  failover {
    max_cost_increase = "25%"
    max_attempts      = 8
  }

  fail_if {
    total_cost_over = 5000
    increase_over   = "20%"
  }
}

locals {
  data_gb  = 150
  shard_gb = ceil(local.data_gb / 4)
  tag      = format("%s-%d", lower("RUN"), var.epochs)
}

storage "raw" {
  uri     = "s3://corp-data/imagenet"
  size_gb = local.data_gb
  region  = "us-east-1"
}
