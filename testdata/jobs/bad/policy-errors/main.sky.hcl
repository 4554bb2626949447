policy {
  minimize = "money"
  deadline = "12 hours"
  regions  = ["amazon:us-*"]
}

task "t" {
  run = "true"
}
