output "model" {
  value       = task.train.outputs.model
  description = "The trained model"
}

output "report" {
  value = task.eval.outputs.report
}
