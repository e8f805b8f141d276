"""Photo analysis: reading photos, feature maps, class activation maps, top photos, class names."""
