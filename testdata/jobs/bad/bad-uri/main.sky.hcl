storage "raw" {
  uri     = "ftp://example.com/raw"
  size_gb = 1
}
