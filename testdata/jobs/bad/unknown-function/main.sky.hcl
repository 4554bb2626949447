locals {
  n = lenght([1, 2])
}

task "t" {
  run = "echo ${local.n}"
}
