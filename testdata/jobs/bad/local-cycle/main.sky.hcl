locals {
  a = local.b + 1
  b = local.a + 1
}

task "t" {
  run = "echo ${local.a}"
}
