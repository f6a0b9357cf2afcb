# An example root: one streamsim deployment in one project (see deploy/README.md).
#   cp terraform.tfvars.example terraform.tfvars   # then edit
#   terraform init && terraform apply
terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.0, < 8.0"
    }
  }
  # Keep the state in the bootstrap bucket, e.g.:
  # backend "gcs" { bucket = "PROJECT-streamsim", prefix = "terraform" }
}

provider "google" {
  project = var.project
  region  = var.region
}

provider "google-beta" {
  project = var.project
  region  = var.region
}

module "streamsim" {
  source = "../modules/streamsim"

  project       = var.project
  region        = var.region
  bigtable_zone = var.bigtable_zone
  profile       = var.profile
  bucket        = var.bucket

  serving_image          = "${local.images}/serving:${var.image_tag}"
  dataflow_image         = "${local.images}/dataflow:${var.image_tag}"
  dataflow_template_path = "gs://${var.bucket}/templates/fold-${var.image_tag}.json"
  refresh_image          = "${local.images}/refresh:${var.image_tag}"
  jobs_image             = "${local.images}/jobs:${var.image_tag}"
  # Stage renames since the running job was started (empty unless a rename is being rolled out).
  transform_name_mapping = jsondecode(file("${path.root}/../../dataflow/transform_name_mapping.json"))

  serving_public      = var.serving_public
  deletion_protection = var.deletion_protection
  labels              = { app = "streamsim" }
}

locals {
  images = "${var.region}-docker.pkg.dev/${var.project}/streamsim"
}

variable "project" {
  type = string
}

variable "region" {
  type    = string
  default = "europe-west1"
}

variable "bigtable_zone" {
  type    = string
  default = "europe-west1-b"
}

variable "profile" {
  type    = string
  default = "standard"
}

variable "bucket" {
  description = "The bootstrap bucket (deploy/README.md, step 1)."
  type        = string
}

variable "image_tag" {
  description = "The tag the images were pushed with (deploy/README.md, step 2), e.g. the git commit."
  type        = string
}

variable "serving_public" {
  type    = bool
  default = false
}

variable "deletion_protection" {
  description = "Set false, apply, then destroy to tear down (deploy/README.md)."
  type        = bool
  default     = true
}

output "serving_url" {
  value = module.streamsim.serving_url
}

output "events_topic" {
  value = module.streamsim.events_topic
}

output "service_accounts" {
  value = module.streamsim.service_accounts
}
