# Typos in provider and backend settings are caught before anything is called.
skyform {
  backend "s3" {
    bucket = "team-state"
  }
}

provider "aws" {
  regions  = ["us-east-1"]
  endpoint = "localhost:4566"
}

task "t" {
  run = "true"
}
