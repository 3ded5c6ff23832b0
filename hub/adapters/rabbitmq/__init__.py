"""RabbitMQ through kombu: connection, topology, publisher, consumer, management API, TLS.
The only package that imports kombu or amqp."""
