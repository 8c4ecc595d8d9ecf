package io.edgeopt.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** Fails loudly when the goldens no longer describe what this code and the runtime produce. */
class GoldenFreshnessTest {
    @Test
    fun `golden layout is the one this test code reads`() {
        assertEquals(GOLDEN_FORMAT, Golden.json.getInt("format"), REGENERATE)
    }

    @Test
    fun `bundle schema version is one the core reads`() {
        val version = Golden.bundle.getInt("schema_version")
        assertTrue(version in SUPPORTED_SCHEMA_VERSIONS, "golden bundle schema_version $version, core reads $SUPPORTED_SCHEMA_VERSIONS; $REGENERATE")
        assertEquals(Golden.json.getJSONObject("runtime").getInt("schema_version"), version, REGENERATE)
    }

    @Test
    fun `cache schema version equals the runtime's`() {
        assertEquals(Golden.json.getJSONObject("runtime").getInt("cache_schema_version"), CACHE_SCHEMA_VERSION, REGENERATE)
    }

    @Test
    fun `committed tokenizer is the one the goldens were made with`() {
        val bytes = Golden.bytes("tokenizer.json")
        assertEquals(Golden.bundle.getString("tokenizer_sha256"), PyCompat.sha256Hex(bytes), REGENERATE)
        assertEquals(Golden.bundle.getLong("tokenizer_bytes"), bytes.size.toLong(), REGENERATE)
    }

    @Test
    fun `committed manifest matches the goldens and its fingerprint recomputes`() {
        val m = Golden.manifest
        assertEquals(Golden.fingerprint, m.fingerprint, REGENERATE)
        assertEquals(Golden.labels, m.labels)
        assertEquals(Golden.maxSeqLen, m.maxSeqLen)
        assertEquals(m.fingerprint, computeFingerprint(m), "Kotlin fingerprint differs from the Python runtime's")
        assertEquals(Golden.bundle.getString("tokenizer_sha256"), m.files.getValue(m.tokenizerFile).sha256, REGENERATE)
    }

    @Test
    fun `embed golden layout, schema versions and index format are this code's`() {
        assertEquals(EMBED_GOLDEN_FORMAT, EmbedGolden.json.getInt("format"), REGENERATE_EMBED)
        val runtime = EmbedGolden.json.getJSONObject("runtime")
        assertTrue(EmbedGolden.bundle.getInt("schema_version") in SUPPORTED_SCHEMA_VERSIONS, REGENERATE_EMBED)
        assertEquals(runtime.getInt("cache_schema_version"), CACHE_SCHEMA_VERSION, REGENERATE_EMBED)
        assertEquals(runtime.getInt("index_schema_version"), INDEX_SCHEMA_VERSION, REGENERATE_EMBED)
        assertEquals(runtime.getInt("index_application_id"), INDEX_APPLICATION_ID, REGENERATE_EMBED)
    }

    @Test
    fun `committed embed tokenizer and manifest are the ones the embed goldens were made with`() {
        val bytes = EmbedGolden.bytes("tokenizer.json")
        assertEquals(EmbedGolden.bundle.getString("tokenizer_sha256"), PyCompat.sha256Hex(bytes), REGENERATE_EMBED)
        assertEquals(EmbedGolden.bundle.getLong("tokenizer_bytes"), bytes.size.toLong(), REGENERATE_EMBED)
        val m = EmbedGolden.manifest
        assertEquals(EmbedGolden.fingerprint, m.fingerprint, REGENERATE_EMBED)
        assertEquals(EmbedGolden.bundle.getInt("dim"), m.embedding?.dim, REGENERATE_EMBED)
        assertEquals(EmbedGolden.bundle.getString("tokenizer_sha256"), m.files.getValue(m.tokenizerFile).sha256, REGENERATE_EMBED)
    }
}
