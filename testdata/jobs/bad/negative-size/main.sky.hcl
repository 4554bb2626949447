storage "raw" {
  uri     = "s3://corp-data/raw"
  size_gb = -5
}

task "t" {
  inputs = { raw = storage.raw }
  run    = "true"
}
