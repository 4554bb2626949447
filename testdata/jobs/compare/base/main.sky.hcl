# The base branch of a pull request (see ../head): fetch → crunch → report, and cleanup.

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
    cpus   = "8+"
    memory = "32+"
  }
  inputs  = { raw = task.fetch.outputs.raw }
  outputs = { result = { size_gb = 1 } }
  run     = "crunch $SKYFORM_INPUT_RAW/data --out $SKYFORM_OUTPUT_RESULT/result"

  estimate {
    hours = 4
  }
}

task "report" {
  inputs = { result = task.crunch.outputs.result }
  run    = "cat $SKYFORM_INPUT_RESULT/result"

  estimate {
    hours = 0.1
  }
}

task "cleanup" {
  depends_on = [task.report]
  run        = "rm -rf /tmp/scratch"

  estimate {
    hours = 0.2
  }
}
