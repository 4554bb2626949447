locals {
  shard_gb = 40
}

task "prep" {
  outputs = { shards = { size_gb = local.shards_gb } }
  run     = "true"
}
