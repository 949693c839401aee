package skald;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/* Stands in for the list the config-index extension's build step would generate (its
 * deployment artifact is not on Maven Central): no dynamic configuration properties. */
@ApplicationScoped
public class EmptyDynamicConfig {
    @Produces
    @ApplicationScoped
    public DynamicConfigPropertyList properties() {
        return new DynamicConfigPropertyList(new java.util.ArrayList<>());
    }
}
