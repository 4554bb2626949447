storage "raw" {
  uri     = "s3://corp-data/raw"
  size_gb = 10
}

task "prep" {
  inputs = { raw = storage.rwa }
  run    = "true"
}
