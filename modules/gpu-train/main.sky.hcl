# A spot GPU training pipeline: shard the raw data on CPUs, train on any of the allowed
# GPUs (spot by default), then evaluate the model on a small CPU machine.

locals {
  shards_gb = ceil(var.dataset_gb / 4)
}

storage "raw" {
  uri     = var.dataset_uri
  size_gb = var.dataset_gb
  region  = var.dataset_region
}

task "prep" {
  resources {
    cpus   = "16+"
    memory = "64+"
  }
  inputs  = { raw = storage.raw }
  outputs = { shards = { size_gb = local.shards_gb } }
  run     = "python prep.py --in $SKYFORM_INPUT_RAW --out $SKYFORM_OUTPUT_SHARDS"

  estimate {
    hours = 1.5
  }
}

task "train" {
  resources {
    accelerators = var.gpus
    spot         = var.spot
  }
  inputs   = { shards = task.prep.outputs.shards }
  outputs  = { model = { size_gb = 2 } }
  run      = "python train.py --epochs ${var.epochs} --data $SKYFORM_INPUT_SHARDS --out $SKYFORM_OUTPUT_MODEL"
  retries  = 3
  recovery = "next_zone"

  estimate {
    hours = var.gpu_hours * var.epochs / 3 / resource.accelerator_count / (resource.accelerator == "A100" ? 2.2 : 1)
  }
}

task "eval" {
  resources {
    cpus = "4+"
  }
  inputs  = { model = task.train.outputs.model, shards = task.prep.outputs.shards }
  outputs = { report = { size_gb = 0.01 } }
  run     = "python eval.py --model $SKYFORM_INPUT_MODEL --data $SKYFORM_INPUT_SHARDS > $SKYFORM_OUTPUT_REPORT/report.txt"

  estimate {
    hours = 0.5
  }
}
