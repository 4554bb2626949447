module "train" {
  source = "./modules/does-not-exist"
}
