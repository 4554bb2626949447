# prep → two parallel transforms → join → report, with data flowing along every edge.
# Each step is a plain shell command, so the pipeline runs anywhere, including the local
# provider.

task "generate" {
  resources {
    cpus = var.cpus
  }
  outputs = { raw = { size_gb = 0.01 } }
  run     = "seq 1 ${var.rows} > $SKYFORM_OUTPUT_RAW/numbers.txt"

  estimate {
    hours = 0.01
  }
}

task "squares" {
  resources {
    cpus = var.cpus
  }
  inputs  = { raw = task.generate.outputs.raw }
  outputs = { part = { size_gb = 0.01 } }
  run     = "awk '{ print $1 * $1 }' $SKYFORM_INPUT_RAW/numbers.txt > $SKYFORM_OUTPUT_PART/squares.txt"

  estimate {
    hours = 0.01
  }
}

task "evens" {
  resources {
    cpus = var.cpus
  }
  inputs  = { raw = task.generate.outputs.raw }
  outputs = { part = { size_gb = 0.01 } }
  run     = "awk '$1 % 2 == 0' $SKYFORM_INPUT_RAW/numbers.txt > $SKYFORM_OUTPUT_PART/evens.txt"

  estimate {
    hours = 0.01
  }
}

task "join" {
  resources {
    cpus = var.cpus
  }
  inputs = {
    squares = task.squares.outputs.part
    evens   = task.evens.outputs.part
  }
  outputs = { joined = { size_gb = 0.01 } }
  run     = "paste -d, $SKYFORM_INPUT_SQUARES/squares.txt $SKYFORM_INPUT_EVENS/evens.txt | head -n ${var.rows / 2} > $SKYFORM_OUTPUT_JOINED/joined.csv"

  estimate {
    hours = 0.01
  }
}

task "report" {
  resources {
    cpus = var.cpus
  }
  inputs  = { joined = task.join.outputs.joined }
  outputs = { summary = { size_gb = 0.001, uri = var.result_uri } }
  run     = <<-EOT
    awk -F, '{ s += $1; e += $2 } END { printf "rows=%d sum_squares=%.0f sum_evens=%.0f\n", NR, s, e }' \
      $SKYFORM_INPUT_JOINED/joined.csv > $SKYFORM_OUTPUT_SUMMARY/summary.txt
  EOT

  estimate {
    hours = 0.01
  }
}
