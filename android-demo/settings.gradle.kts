// Android Studio project of the edgeopt demo: `core` is platform-free Kotlin (also built and tested without Gradle
// by core/run-tests.sh), `app` is the Android application.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "edgeopt-android-demo"
include(":core", ":app")
