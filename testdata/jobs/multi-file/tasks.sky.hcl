task "prep" {
  resources {
    cpus   = "16+"
    memory = "64+"
  }
  inputs  = { raw = storage.raw }
  outputs = { shards = { size_gb = local.shard_gb } }
  run     = "python prep.py --in $SKYFORM_INPUT_RAW --out $SKYFORM_OUTPUT_SHARDS"
  env     = { TAG = local.tag, TOKEN = var.token }

  estimate {
    hours = 1.5
  }
}

task "train" {
  resources {
    accelerators = ["V100:8", "A100:8"]
    spot         = true
  }
  inputs   = { shards = task.prep.outputs.shards }
  outputs  = { model = { size_gb = 2 } }
  run      = "python train.py --epochs ${var.epochs}"
  retries  = 3
  recovery = "next_region"

  estimate {
    hours = 80 / resource.accelerator_count / (resource.accelerator == "A100" ? 2.2 : 1)
  }
}

task "publish" {
  inputs     = { model = task.train.outputs.model }
  outputs    = { release = { size_gb = 2, uri = "s3://corp-models/latest" } }
  depends_on = [task.prep]
  run        = "cp -r $SKYFORM_INPUT_MODEL/. $SKYFORM_OUTPUT_RELEASE/"
}

output "model" {
  value = task.train.outputs.model
}
