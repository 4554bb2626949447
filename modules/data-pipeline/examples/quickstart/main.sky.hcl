# The quick start: the data pipeline on the local provider (no cloud account needed).

provider "local" {
  zones = ["zone-a", "zone-b"]
  slots = 4
}

policy {
  minimize = "cost"
}

module "pipeline" {
  source     = "../.."
  rows       = 20000
  result_uri = "./out"
}

output "summary" {
  value = module.pipeline.summary
}
