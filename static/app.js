// botilyx-media upload page script
