provider "aws" {}
provider "gcp" {}
provider "azure" {}

policy {
  minimize = "cost"
  deadline = "24h"
  regions  = ["aws:us-*", "gcp:us-*", "azure:eastus*"]
}

module "train" {
  source         = "../.."
  dataset_uri    = "s3://corp-data/imagenet"
  dataset_gb     = 150
  dataset_region = "us-east-1"
  epochs         = 3
}

output "model" {
  value = module.train.model
}
