"""Readers of on-disk datasets in their standard layouts (ImageNet, iNaturalist, iWildCam-WILDS, DomainNet, folders)."""
