# One service account per component, each with the least it needs. No runtime account holds
# Bigtable or Pub/Sub admin: the tables, topics and subscriptions come from this module, and
# no runtime command calls an admin API against Google Cloud (tests/deploy/test_no_admin.py).
locals {
  standard = var.profile == "standard"
  small    = var.profile == "small"
}

resource "google_service_account" "fold" {
  project      = var.project
  account_id   = "${var.prefix}fold"
  display_name = "streamsim fold (Pub/Sub -> Bigtable)"
}

resource "google_service_account" "refresh" {
  project      = var.project
  account_id   = "${var.prefix}refresh"
  display_name = "streamsim refresh (DIMSUM on Spark)"
}

resource "google_service_account" "serving" {
  project      = var.project
  account_id   = "${var.prefix}serving"
  display_name = "streamsim serving (Cloud Run)"
}

resource "google_service_account" "scheduler" {
  project      = var.project
  account_id   = "${var.prefix}scheduler"
  display_name = "streamsim schedules (starts the refresh, and the fold in the small profile)"
}

# --- the fold: subscriber, Bigtable user, Dataflow worker --------------------------------
resource "google_pubsub_subscription_iam_member" "fold_subscribes" {
  project      = var.project
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.fold.member
}

# Dataflow's Pub/Sub source reads the subscription's metadata (backlog, ack deadline).
resource "google_pubsub_subscription_iam_member" "fold_views_subscription" {
  project      = var.project
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.viewer"
  member       = google_service_account.fold.member
}

# Contract breaches are published to the dead-letter topic by the fold itself.
resource "google_pubsub_topic_iam_member" "fold_publishes_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.fold.member
}

resource "google_bigtable_instance_iam_member" "fold_uses_bigtable" {
  project  = var.project
  instance = google_bigtable_instance.this.name
  role     = "roles/bigtable.user"
  member   = google_service_account.fold.member
}

resource "google_project_iam_member" "fold_is_dataflow_worker" {
  count   = local.standard ? 1 : 0
  project = var.project
  role    = "roles/dataflow.worker"
  member  = google_service_account.fold.member
}

# --- the refresh: Dataproc worker, Bigtable user --------------------------------------
resource "google_bigtable_instance_iam_member" "refresh_uses_bigtable" {
  project  = var.project
  instance = google_bigtable_instance.this.name
  role     = "roles/bigtable.user"
  member   = google_service_account.refresh.member
}

resource "google_project_iam_member" "refresh_is_dataproc_worker" {
  count   = local.standard ? 1 : 0
  project = var.project
  role    = "roles/dataproc.worker"
  member  = google_service_account.refresh.member
}

# --- serving: Bigtable reader only ------------------------------------------------------
resource "google_bigtable_instance_iam_member" "serving_reads_bigtable" {
  project  = var.project
  instance = google_bigtable_instance.this.name
  role     = "roles/bigtable.reader"
  member   = google_service_account.serving.member
}

# --- what the job accounts need around the work itself ---------------------------------
# Dataflow temp/staging files, the template spec, the refresh's main file, Dataproc staging.
resource "google_storage_bucket_iam_member" "jobs_use_bucket" {
  for_each = { fold = google_service_account.fold.member, refresh = google_service_account.refresh.member }
  bucket   = var.bucket
  role     = "roles/storage.objectAdmin"
  member   = each.value
}

# Dataflow workers and Dataproc Serverless pull their images as the job's account.
resource "google_artifact_registry_repository_iam_member" "jobs_pull_images" {
  for_each   = { fold = google_service_account.fold.member, refresh = google_service_account.refresh.member }
  project    = var.project
  location   = var.region
  repository = var.artifact_repository
  role       = "roles/artifactregistry.reader"
  member     = each.value
}

# --- the scheduler: starts batches (standard) or jobs (small) as the job's account ------
resource "google_project_iam_member" "scheduler_creates_batches" {
  count   = local.standard ? 1 : 0
  project = var.project
  role    = "roles/dataproc.editor"
  member  = google_service_account.scheduler.member
}

resource "google_service_account_iam_member" "scheduler_acts_as_refresh" {
  count              = local.standard ? 1 : 0
  service_account_id = google_service_account.refresh.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.scheduler.member
}
