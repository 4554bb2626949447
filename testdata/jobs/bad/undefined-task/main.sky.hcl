task "prep" {
  outputs = { shards = { size_gb = 40 } }
  run     = "true"
}

task "train" {
  inputs = { shards = task.prpe.outputs.shards }
  run    = "true"
}
