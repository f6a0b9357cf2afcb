# The fold. standard: a streaming Dataflow job from the Flex Template. small: a Cloud Run
# job of the jobs image, run on a schedule, that drains the subscription and exits once the backlog is drained.
resource "google_dataflow_flex_template_job" "fold" {
  count                   = local.standard ? 1 : 0
  provider                = google-beta
  project                 = var.project
  region                  = var.region
  name                    = "${var.prefix}fold"
  container_spec_gcs_path = var.dataflow_template_path
  sdk_container_image     = var.dataflow_image
  service_account_email   = google_service_account.fold.email
  temp_location           = "gs://${var.bucket}/dataflow/tmp"
  staging_location        = "gs://${var.bucket}/dataflow/staging"
  machine_type            = var.dataflow_machine_type
  max_workers             = var.dataflow_max_workers
  enable_streaming_engine = true
  labels                  = var.labels
  # The parameters of deploy/dataflow/metadata.json.
  parameters = merge(
    {
      bigtable_instance = google_bigtable_instance.this.name, table_prefix = var.prefix,
      app_profile_id    = google_bigtable_app_profile.streamsim.app_profile_id,
    },
    var.weights == "" ? {} : { weights = var.weights },
  )
  # A change of the template or its parameters is an in-place update (`--update`): stage
  # names are the contract (deploy/dataflow/stages.json); renamed ones are mapped here.
  transform_name_mapping = var.transform_name_mapping
  # `terraform destroy` drains: pulled messages are written and acknowledged first.
  on_delete = "drain"

  depends_on = [
    google_bigtable_gc_policy.family,
    google_bigtable_instance_iam_member.fold_uses_bigtable,
    google_pubsub_subscription_iam_member.fold_subscribes,
    google_project_iam_member.fold_is_dataflow_worker,
  ]
}

resource "google_cloud_run_v2_job" "fold" {
  count               = local.small ? 1 : 0
  project             = var.project
  name                = "${var.prefix}fold"
  location            = var.region
  deletion_protection = false
  labels              = var.labels

  template {
    task_count = 1
    template {
      service_account = google_service_account.fold.email
      timeout         = "900s"
      max_retries     = 1
      containers {
        image = var.jobs_image
        # Stop once the backlog is drained (nothing pulled for a minute was a minute old, so a
        # live trickle does not keep it running), or before the next run starts; a run that
        # overlaps the next one is safe anyway (the fold takes any number of writers).
        args = [
          "stream", "--drain-exit", "60", "--max-seconds", "840",
          "--project", var.project, "--instance", google_bigtable_instance.this.name, "--prefix", var.prefix,
          "--app-profile-id", google_bigtable_app_profile.streamsim.app_profile_id,
        ]
        resources {
          limits = { cpu = "1", memory = "2Gi" }
        }
        dynamic "env" {
          for_each = var.weights == "" ? {} : { STREAMSIM_WEIGHTS = var.weights }
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_bigtable_gc_policy.family, google_bigtable_instance_iam_member.fold_uses_bigtable]
}
