# The pull request's branch (see ../base): crunch moves to a GPU spot offering, cleanup is
# removed and publish is added.

skyform {
  name = "nightly-report"
}

provider "local" {
  zones = ["zone-a", "zone-b"]
}

task "fetch" {
  resources {
    cpus = "2+"
  }
  outputs = { raw = { size_gb = 5 } }
  run     = "fetch > $SKYFORM_OUTPUT_RAW/data"

  estimate {
    hours = 0.5
  }
}

task "crunch" {
  resources {
    accelerators = ["LocalGPU:4"]
    spot         = true
  }
  inputs  = { raw = task.fetch.outputs.raw }
  outputs = { result = { size_gb = 1 } }
  run     = "crunch --gpu $SKYFORM_INPUT_RAW/data --out $SKYFORM_OUTPUT_RESULT/result"

  estimate {
    hours = 1
  }
}

task "report" {
  inputs = { result = task.crunch.outputs.result }
  run    = "cat $SKYFORM_INPUT_RESULT/result"

  estimate {
    hours = 0.1
  }
}

task "publish" {
  inputs = { result = task.crunch.outputs.result }
  run    = "publish $SKYFORM_INPUT_RESULT/result"

  estimate {
    hours = 0.3
  }
}
