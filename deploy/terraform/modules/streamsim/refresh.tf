# The refresh on a schedule. standard: Cloud Scheduler creates a Dataproc Serverless batch
# (runtime 2.3, Spark 3.5) running the refresh image. small: Cloud Scheduler runs a Cloud
# Run job of the jobs image (Spark local[*] in the task). The request bodies are the JSON
# files in definitions/, which tests/deploy/test_definitions.py parses into the Google
# client libraries' own message types.
locals {
  refresh_batch = templatefile("${path.module}/definitions/refresh-batch.json", {
    project         = var.project
    region          = var.region
    bucket          = var.bucket
    instance        = google_bigtable_instance.this.name
    prefix          = var.prefix
    app_profile     = google_bigtable_app_profile.streamsim.app_profile_id
    image           = var.refresh_image
    max_executors   = "4"
    service_account = google_service_account.refresh.email
    subnetwork      = var.dataproc_subnetwork
  })
  refresh_batch_schedule = jsondecode(templatefile("${path.module}/definitions/schedule-refresh-batch.json", {
    project           = var.project
    region            = var.region
    schedule          = var.refresh_schedule
    time_zone         = var.time_zone
    scheduler_account = google_service_account.scheduler.email
  }))
  run_job_schedules = {
    for job, schedule in { fold = var.fold_schedule, refresh = var.refresh_schedule } :
    job => jsondecode(templatefile("${path.module}/definitions/schedule-run-job.json", {
      project           = var.project
      region            = var.region
      job               = "${var.prefix}${job}"
      schedule          = schedule
      time_zone         = var.time_zone
      scheduler_account = google_service_account.scheduler.email
    }))
  }
}

# The batch's main file: `python -m batch`'s entry point; the package itself is in the image.
resource "google_storage_bucket_object" "refresh_main" {
  count  = local.standard ? 1 : 0
  bucket = var.bucket
  name   = "streamsim/refresh_main.py"
  source = "${path.module}/../../../../batch/__main__.py"
}

resource "google_cloud_scheduler_job" "refresh_batch" {
  count            = local.standard ? 1 : 0
  project          = var.project
  region           = var.region
  name             = "${var.prefix}refresh"
  description      = local.refresh_batch_schedule.description
  schedule         = local.refresh_batch_schedule.schedule
  time_zone        = local.refresh_batch_schedule.timeZone
  attempt_deadline = local.refresh_batch_schedule.attemptDeadline

  retry_config {
    retry_count          = local.refresh_batch_schedule.retryConfig.retryCount
    min_backoff_duration = local.refresh_batch_schedule.retryConfig.minBackoffDuration
    max_backoff_duration = local.refresh_batch_schedule.retryConfig.maxBackoffDuration
  }

  http_target {
    uri         = local.refresh_batch_schedule.httpTarget.uri
    http_method = local.refresh_batch_schedule.httpTarget.httpMethod
    headers     = local.refresh_batch_schedule.httpTarget.headers
    body        = base64encode(local.refresh_batch)
    oauth_token {
      service_account_email = local.refresh_batch_schedule.httpTarget.oauthToken.serviceAccountEmail
      scope                 = local.refresh_batch_schedule.httpTarget.oauthToken.scope
    }
  }

  depends_on = [google_storage_bucket_object.refresh_main, google_project_iam_member.scheduler_creates_batches]
}

resource "google_cloud_run_v2_job" "refresh" {
  count               = local.small ? 1 : 0
  project             = var.project
  name                = "${var.prefix}refresh"
  location            = var.region
  deletion_protection = false
  labels              = var.labels

  template {
    task_count = 1
    template {
      service_account = google_service_account.refresh.email
      timeout         = "3600s"
      max_retries     = 1
      containers {
        image = var.jobs_image
        args = [
          "refresh", "--json",
          "--project", var.project, "--instance", google_bigtable_instance.this.name, "--prefix", var.prefix,
          "--app-profile-id", google_bigtable_app_profile.streamsim.app_profile_id,
        ]
        # The size docs/cost.md prices; Spark's driver (local[*]) gets half the memory.
        resources {
          limits = { cpu = "2", memory = "4Gi" }
        }
        env {
          name  = "SPARK_DRIVER_MEMORY"
          value = "2g"
        }
      }
    }
  }

  depends_on = [google_bigtable_gc_policy.family, google_bigtable_instance_iam_member.refresh_uses_bigtable]
}

resource "google_cloud_scheduler_job" "run_job" {
  for_each         = local.small ? local.run_job_schedules : {}
  project          = var.project
  region           = var.region
  name             = "${var.prefix}${each.key}"
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = each.value.timeZone
  attempt_deadline = each.value.attemptDeadline

  retry_config {
    retry_count          = each.value.retryConfig.retryCount
    min_backoff_duration = each.value.retryConfig.minBackoffDuration
    max_backoff_duration = each.value.retryConfig.maxBackoffDuration
  }

  http_target {
    uri         = each.value.httpTarget.uri
    http_method = each.value.httpTarget.httpMethod
    oauth_token {
      service_account_email = each.value.httpTarget.oauthToken.serviceAccountEmail
      scope                 = each.value.httpTarget.oauthToken.scope
    }
  }

  depends_on = [google_cloud_run_v2_job.fold, google_cloud_run_v2_job.refresh]
}

# Running a job is run.jobs.run on that job (in roles/run.invoker).
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_fold" {
  count    = local.small ? 1 : 0
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.fold[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_refresh" {
  count    = local.small ? 1 : 0
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.refresh[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}
