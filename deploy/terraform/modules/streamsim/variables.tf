variable "project" {
  description = "The GCP project id."
  type        = string
}

variable "region" {
  description = "Region of Pub/Sub-adjacent compute: Cloud Run, Dataflow, Dataproc, Cloud Scheduler."
  type        = string
}

variable "bigtable_zone" {
  description = "Zone of the Bigtable cluster (in var.region)."
  type        = string
}

variable "profile" {
  description = <<-EOT
    "standard": the fold on Dataflow (Flex Template) and the refresh as Dataproc Serverless batches.
    "small": no always-on Dataflow worker or Dataproc; the fold and the refresh are scheduled
    Cloud Run jobs of the jobs image (see deploy/README.md, "The small profile").
  EOT
  type        = string
  default     = "standard"
  validation {
    condition     = contains(["standard", "small"], var.profile)
    error_message = "profile must be \"standard\" or \"small\"."
  }
}

variable "prefix" {
  description = "Table, topic and subscription id prefix (schemas.layout.DEFAULT_PREFIX); also names the service accounts."
  type        = string
  default     = "streamsim-"
}

variable "bigtable_instance" {
  description = "Bigtable instance id."
  type        = string
  default     = "streamsim"
}

variable "bigtable_min_nodes" {
  description = "Autoscaling floor (one node is the whole floor cost of the deployment)."
  type        = number
  default     = 1
}

variable "bigtable_max_nodes" {
  description = "Autoscaling ceiling."
  type        = number
  default     = 3
}

variable "bigtable_cpu_target" {
  description = "Autoscaling CPU target, percent (10-80); lower keeps serving reads' p99 down during a burst."
  type        = number
  default     = 60
}

variable "deletion_protection" {
  description = "Keep the instance and its tables from `terraform destroy` (set false only to tear down)."
  type        = bool
  default     = true
}

variable "serving_image" {
  description = "The serving image (deploy/docker/serving.Dockerfile), e.g. REGION-docker.pkg.dev/P/streamsim/serving:TAG."
  type        = string
}

variable "dataflow_image" {
  description = "standard: the Flex Template image, launcher and workers in one (deploy/docker/dataflow.Dockerfile)."
  type        = string
  default     = ""
}

variable "dataflow_template_path" {
  description = "standard: gs:// path of the template spec that `gcloud dataflow flex-template build` wrote."
  type        = string
  default     = ""
}

variable "dataflow_max_workers" {
  description = "standard: ceiling of the fold's Dataflow autoscaling."
  type        = number
  default     = 3
}

variable "dataflow_machine_type" {
  description = "standard: the fold's worker machine type (Streaming Engine works best with small ones)."
  type        = string
  default     = "n1-standard-2"
}

variable "refresh_image" {
  description = "standard: the Dataproc Serverless custom container (deploy/docker/refresh.Dockerfile)."
  type        = string
  default     = ""
}

variable "jobs_image" {
  description = "small: the image of the fold and refresh Cloud Run jobs (deploy/docker/jobs.Dockerfile)."
  type        = string
  default     = ""
}

variable "refresh_schedule" {
  description = "Cron schedule of the refresh (Cloud Scheduler syntax)."
  type        = string
  default     = "*/30 * * * *"
}

variable "fold_schedule" {
  description = "small: cron schedule of the fold job (it drains the subscription and exits, within 14 minutes)."
  type        = string
  default     = "*/15 * * * *"
}

variable "time_zone" {
  description = "Time zone of the schedules."
  type        = string
  default     = "Etc/UTC"
}

variable "serving_min_instances" {
  description = "Cloud Run minimum instances (0 scales to zero; 1 keeps the similarity cache warm)."
  type        = number
  default     = 1
}

variable "serving_max_instances" {
  description = "Cloud Run maximum instances."
  type        = number
  default     = 4
}

variable "serving_public" {
  description = "Let anyone call the API (allUsers as run.invoker); false: only authenticated callers."
  type        = bool
  default     = false
}

variable "weights" {
  description = "Event weights, e.g. browse=0.5,basket=2,purchase=6 (STREAMSIM_WEIGHTS); empty: the defaults."
  type        = string
  default     = ""
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "bucket" {
  description = "An existing bucket (made at bootstrap, see deploy/README.md): Flex Template spec, Dataflow temp files, the refresh's main file, Dataproc staging."
  type        = string
}

variable "artifact_repository" {
  description = "The Artifact Registry repository (in var.region) the images are pushed to; the job accounts may read it."
  type        = string
  default     = "streamsim"
}

variable "dataproc_subnetwork" {
  description = "standard: subnetwork of the Dataproc Serverless batches (it needs Private Google Access)."
  type        = string
  default     = "default"
}

variable "transform_name_mapping" {
  description = "standard: old -> new transform names for an in-place update of the fold (deploy/dataflow/transform_name_mapping.json)."
  type        = map(string)
  default     = {}
}
