"""Publishing to WordPress: the REST client (`wp_client`), the exactly-once publisher
(`publisher`, over the `store` protocol the writer service implements), the connection
test and taxonomy/post sync (`connection`), and webhook signatures (`webhooks`)."""
