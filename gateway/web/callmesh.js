// callmesh browser client: written in a later commit.
