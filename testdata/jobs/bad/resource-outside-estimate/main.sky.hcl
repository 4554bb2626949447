task "t" {
  run = "echo ${resource.cloud}"
}
