"""Hub tooling: model cards (`model_card`, `converted_card`), official checkpoint ports (`convert`, `port_rules`,
`checkpoint_io`) and repository helpers (`repos`: offline checks, model and dataset uploads)."""
