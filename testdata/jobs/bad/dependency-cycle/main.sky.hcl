task "a" {
  inputs  = { x = task.b.outputs.y }
  outputs = { x = { size_gb = 1 } }
  run     = "true"
}

task "b" {
  inputs  = { x = task.a.outputs.x }
  outputs = { y = { size_gb = 1 } }
  run     = "true"
}
