"""The site: the manifest (plain data), the pages rendered from it, the published folder."""
