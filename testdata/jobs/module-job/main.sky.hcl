provider "local" {
  zones = ["zone-a", "zone-b", "zone-c"]
}

module "pipeline" {
  source = "../../../modules/data-pipeline"
  rows   = 1000
}

task "archive" {
  inputs = { summary = module.pipeline.summary }
  run    = "cat $SKYFORM_INPUT_SUMMARY/summary.txt"
}
