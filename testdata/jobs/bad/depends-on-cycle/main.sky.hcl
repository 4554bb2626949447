task "a" {
  outputs    = { x = { size_gb = 1 } }
  depends_on = [task.b]
  run        = "true"
}

task "b" {
  inputs = { x = task.a.outputs.x }
  run    = "true"
}
