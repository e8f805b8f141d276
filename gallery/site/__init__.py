"""The site: the manifest (typed records, written and shown as plain data), the pages rendered from it, the published folder."""
