output "summary" {
  value       = task.report.outputs.summary
  description = "rows, sum of squares and sum of even numbers"
}
