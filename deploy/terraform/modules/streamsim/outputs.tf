output "serving_url" {
  description = "The API's URL (GET /recommendations?user=U)."
  value       = google_cloud_run_v2_service.serving.uri
}

output "events_topic" {
  description = "Where publishers send events (the event contract: docs/events.md)."
  value       = google_pubsub_topic.events.id
}

output "dead_letter_subscription" {
  description = "Where rejected events wait, bytes intact, with the reason in their attributes."
  value       = google_pubsub_subscription.dead_letter_keep.id
}

output "bigtable_instance" {
  value = google_bigtable_instance.this.name
}

output "app_profile" {
  value = google_bigtable_app_profile.streamsim.app_profile_id
}

output "service_accounts" {
  description = "The component accounts (fold, refresh, serving, scheduler)."
  value = {
    fold      = google_service_account.fold.email
    refresh   = google_service_account.refresh.email
    serving   = google_service_account.serving.email
    scheduler = google_service_account.scheduler.email
  }
}

output "fold_job" {
  description = "standard: the Dataflow job id; small: the Cloud Run job name."
  value       = local.standard ? google_dataflow_flex_template_job.fold[0].job_id : google_cloud_run_v2_job.fold[0].name
}
